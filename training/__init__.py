"""Desk stage 1: corpora, exploration, augmentation, features and training of the emotion CNN."""
