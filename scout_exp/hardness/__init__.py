"""Hardness predictor trained jointly with the classifier, and confidence-score evaluation (METHOD section 2)."""
