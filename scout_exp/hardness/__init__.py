"""Hardness predictor trained jointly with the classifier, and confidence-score evaluation (docs/method.md section 2)."""
