"""Desk stage 2: Keras model to full-int8 TFLite with its JSON contract and model card."""
