"""Face recognition evaluation: verification ROC / TAR@FAR / EER, CMC, LFW pairs, IJB-A templates."""
