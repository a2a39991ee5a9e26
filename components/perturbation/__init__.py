"""Perturbing inputs: feature groups (:mod:`.groups`) and the one feature-removal operator
(:mod:`.removal`) that explanation methods and evaluation metrics share, so neither has to
import the other."""
