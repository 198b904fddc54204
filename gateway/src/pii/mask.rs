//! Writing masks over findings, in plain text or inside JSON text (tool-call arguments) where a mask that
//! replaces a bare number must itself be quoted to keep the JSON valid.

use super::entity::{Finding, Tally};

/// Where a JSON text stands after the bytes seen so far: inside a string literal or not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JsonCursor {
    in_string: bool,
    escaped: bool,
}

impl JsonCursor {
    /// Moves past `text`.
    pub(crate) fn advance(&mut self, text: &str) {
        for byte in text.bytes() {
            if self.escaped {
                self.escaped = false;
            } else if self.in_string {
                match byte {
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
            } else if byte == b'"' {
                self.in_string = true;
            }
        }
    }
}

/// Appends `text` to `out` with every finding replaced by its mask, and counts the findings.
///
/// With a JSON cursor, a finding outside a string literal (a card number written as a JSON number) becomes
/// a quoted mask. The cursor skips the replaced value: masks hold no quotes, so the output's structure is
/// what the cursor tracks.
pub(crate) fn write_masked(
    out: &mut String,
    text: &str,
    findings: &[Finding],
    tally: &mut Tally,
    mut json: Option<&mut JsonCursor>,
) {
    let mut copied = 0;
    for finding in findings {
        let before = &text[copied..finding.range.start];
        out.push_str(before);
        let quote = match json.as_deref_mut() {
            Some(cursor) => {
                cursor.advance(before);
                !cursor.in_string
            }
            None => false,
        };
        if quote {
            out.push('"');
        }
        out.push_str(finding.kind.mask());
        if quote {
            out.push('"');
        }
        tally.add(&finding.kind);
        copied = finding.range.end;
    }
    let rest = &text[copied..];
    out.push_str(rest);
    if let Some(cursor) = json {
        cursor.advance(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::entity::EntityKind;

    #[test]
    fn masks_outside_json_strings_are_quoted() {
        let text = r#"{"card": 4111111111111111, "note": "mail jane@example.com", "esc": "\"4111111111111111\""}"#;
        let card = text.find("4111").unwrap();
        let mail = text.find("jane").unwrap();
        let escaped = text.rfind("4111").unwrap();
        let findings = [
            Finding {
                kind: EntityKind::CreditCard,
                range: card..card + 16,
            },
            Finding {
                kind: EntityKind::Email,
                range: mail..mail + 16,
            },
            Finding {
                kind: EntityKind::CreditCard,
                range: escaped..escaped + 16,
            },
        ];
        let mut out = String::new();
        let mut tally = Tally::default();
        let mut cursor = JsonCursor::default();
        write_masked(&mut out, text, &findings, &mut tally, Some(&mut cursor));
        assert_eq!(
            out,
            r#"{"card": "[CREDIT_CARD]", "note": "mail [EMAIL]", "esc": "\"[CREDIT_CARD]\""}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["card"], "[CREDIT_CARD]");
        assert_eq!(tally.total(), 3);
        assert_eq!(cursor, JsonCursor::default());
    }
}
