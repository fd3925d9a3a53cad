"""distributed_agent: seeded sweeps, multi-seed studies and paper tables for a GRU tool-use agent."""

__version__ = "0.1.0"
