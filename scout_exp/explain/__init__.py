"""SCOUT explanations: confidence scores, discriminant maps, segments and the part-based evaluation."""

from scout_exp.explain.confidence import certainty_score, confidence_map, easiness_score, softmax_score
from scout_exp.explain.discriminant import VARIANTS, complement, discriminant_map
from scout_exp.explain.evaluation import part_iou, part_precision_recall, parts_inside, pr_curve
from scout_exp.explain.scout import Explanation, ScoutExplainer
from scout_exp.explain.segments import AREA_FRACTIONS, segment_by_area, segment_by_threshold

__all__ = [
    "AREA_FRACTIONS",
    "VARIANTS",
    "Explanation",
    "ScoutExplainer",
    "certainty_score",
    "complement",
    "confidence_map",
    "discriminant_map",
    "easiness_score",
    "part_iou",
    "part_precision_recall",
    "parts_inside",
    "pr_curve",
    "segment_by_area",
    "segment_by_threshold",
    "softmax_score",
]
