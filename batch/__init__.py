"""Offline batch scoring of files through the same contract, features, model and rules."""
