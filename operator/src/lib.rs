//! Sluice operator: controllers that compile custom resources into gateway configuration.
