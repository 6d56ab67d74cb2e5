"""Tests, mirroring the repository: service/, client/, infra/, proto/, container/, bench/."""
