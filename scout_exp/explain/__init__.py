"""SCOUT explanations: confidence maps, discriminant maps, segments and the part-based evaluation."""

from scout_exp.explain.confidence import confidence_map
from scout_exp.explain.discriminant import VARIANTS, complement, discriminant_map
from scout_exp.explain.evaluation import part_iou, part_precision_recall, parts_inside, pr_curve
from scout_exp.explain.scout import Explanation, ScoutExplainer
from scout_exp.explain.segments import AREA_FRACTIONS, segment_by_area, segment_by_threshold

__all__ = [
    "AREA_FRACTIONS",
    "VARIANTS",
    "Explanation",
    "ScoutExplainer",
    "complement",
    "confidence_map",
    "discriminant_map",
    "part_iou",
    "part_precision_recall",
    "parts_inside",
    "pr_curve",
    "segment_by_area",
    "segment_by_threshold",
]
