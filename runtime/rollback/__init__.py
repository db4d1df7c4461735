"""Rolls a SageMaker endpoint back to its previous configuration on Model Monitor violations."""
