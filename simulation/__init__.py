"""yujing: simulation."""
