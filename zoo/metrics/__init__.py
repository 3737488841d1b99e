"""Sample-quality and likelihood metrics."""
