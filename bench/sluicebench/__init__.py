"""Sluice benchmark suite: Sluice vs direct vs LiteLLM vs Portkey on the same mock upstreams."""
