"""Sample-quality metrics: FID, KID, precision/recall, density/coverage, diversity."""
