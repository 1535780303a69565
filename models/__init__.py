"""yujing: models."""
