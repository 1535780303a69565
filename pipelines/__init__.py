"""yujing: pipelines."""
