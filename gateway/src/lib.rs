//! Sluice gateway: the data plane in front of every model provider.
