"""The test kit later features reuse: a fake clock and migrated databases."""
