//! What a PII finding is: the entity kinds, their masks and metric names, and the per-kind tally.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use sluice_crds::v1alpha1::PiiEntity;

/// The kind of a finding: one of the built-in detectors or a route's custom pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Email,
    Phone,
    CreditCard,
    Iban,
    /// US SSN, UK National Insurance number, Spanish DNI/NIE.
    NationalId,
    /// IPv4 or IPv6.
    IpAddress,
    Custom(Arc<CustomEntity>),
}

/// A custom pattern's label, precomputed once per configuration.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CustomEntity {
    name: String,
    mask: String,
}

impl CustomEntity {
    /// `name` as configured (`[A-Za-z0-9_-]+`); the mask is `[NAME]` upper-cased with `-` as `_`.
    pub fn new(name: &str) -> Self {
        let label = name.to_ascii_uppercase().replace('-', "_");
        Self {
            name: name.to_owned(),
            mask: format!("[{label}]"),
        }
    }
}

impl EntityKind {
    /// Stable lowercase name used in metrics and in block errors (`credit_card`; a custom pattern's own name).
    pub fn name(&self) -> &str {
        match self {
            EntityKind::Email => "email",
            EntityKind::Phone => "phone",
            EntityKind::CreditCard => "credit_card",
            EntityKind::Iban => "iban",
            EntityKind::NationalId => "national_id",
            EntityKind::IpAddress => "ip_address",
            EntityKind::Custom(custom) => &custom.name,
        }
    }

    /// The text that replaces a finding of this kind (`[EMAIL]`, `[CREDIT_CARD]`, `[EMPLOYEE_ID]`).
    pub fn mask(&self) -> &str {
        match self {
            EntityKind::Email => "[EMAIL]",
            EntityKind::Phone => "[PHONE]",
            EntityKind::CreditCard => "[CREDIT_CARD]",
            EntityKind::Iban => "[IBAN]",
            EntityKind::NationalId => "[NATIONAL_ID]",
            EntityKind::IpAddress => "[IP_ADDRESS]",
            EntityKind::Custom(custom) => &custom.mask,
        }
    }

    /// Which finding wins when two overlap: lower first. Checksummed and structurally strict kinds beat loose
    /// ones (a card number is never also reported as a phone); built-ins beat custom patterns.
    pub(crate) fn priority(&self) -> u8 {
        match self {
            EntityKind::Email => 0,
            EntityKind::Iban => 1,
            EntityKind::CreditCard => 2,
            EntityKind::NationalId => 3,
            EntityKind::IpAddress => 4,
            EntityKind::Phone => 5,
            EntityKind::Custom(_) => 6,
        }
    }
}

impl From<PiiEntity> for EntityKind {
    fn from(entity: PiiEntity) -> Self {
        match entity {
            PiiEntity::Email => EntityKind::Email,
            PiiEntity::Phone => EntityKind::Phone,
            PiiEntity::CreditCard => EntityKind::CreditCard,
            PiiEntity::Iban => EntityKind::Iban,
            PiiEntity::NationalId => EntityKind::NationalId,
            PiiEntity::IpAddress => EntityKind::IpAddress,
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One detected entity: its kind and byte range in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: EntityKind,
    pub range: Range<usize>,
}

/// Findings counted per kind, in first-seen order. Never holds the values themselves, so it is safe to log
/// and to put in metrics and error messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: Vec<(EntityKind, u64)>,
}

impl Tally {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Findings of all kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, count)| count).sum()
    }

    /// `(kind, count)` pairs, in the order the kinds were first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&EntityKind, u64)> {
        self.counts.iter().map(|(kind, count)| (kind, *count))
    }

    /// Count of one kind.
    pub fn count(&self, kind: &EntityKind) -> u64 {
        self.counts
            .iter()
            .find(|(seen, _)| seen == kind)
            .map_or(0, |(_, count)| *count)
    }

    /// Adds one finding of `kind`.
    pub fn add(&mut self, kind: &EntityKind) {
        match self.counts.iter_mut().find(|(seen, _)| seen == kind) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((kind.clone(), 1)),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Tally) {
        for (kind, count) in &other.counts {
            match self.counts.iter_mut().find(|(seen, _)| seen == kind) {
                Some((_, total)) => *total += count,
                None => self.counts.push((kind.clone(), *count)),
            }
        }
    }

    /// Kind names, comma-separated and sorted (`credit_card, email`), for error messages.
    pub fn kind_list(&self) -> String {
        let mut names: Vec<&str> = self.counts.iter().map(|(kind, _)| kind.name()).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_masks_are_upper_snake_case() {
        let kind = EntityKind::Custom(Arc::new(CustomEntity::new("employee-id")));
        assert_eq!(kind.mask(), "[EMPLOYEE_ID]");
        assert_eq!(kind.name(), "employee-id");
    }

    #[test]
    fn tally_counts_and_lists_kinds_without_values() {
        let mut tally = Tally::default();
        tally.add(&EntityKind::Email);
        tally.add(&EntityKind::CreditCard);
        tally.add(&EntityKind::Email);
        assert_eq!(tally.count(&EntityKind::Email), 2);
        assert_eq!(tally.total(), 3);
        assert_eq!(tally.kind_list(), "credit_card, email");
        let mut other = Tally::default();
        other.add(&EntityKind::Phone);
        other.add(&EntityKind::Email);
        tally.merge(&other);
        assert_eq!(tally.count(&EntityKind::Email), 3);
        assert_eq!(tally.count(&EntityKind::Phone), 1);
    }
}
