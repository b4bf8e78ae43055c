"""Data throughput: FaceParts rendering (one process, 112x112) and the CASIA ``.dat`` loader."""

from __future__ import annotations

from typing import Any


def main() -> dict[str, Any]:
    """Images per second of each source; FaceParts must reach 2,000/s so rendering never starves training."""
    from scout_exp.data.casia_dat import measure_dat_throughput
    from scout_exp.data.faceparts import measure_render_throughput

    faceparts = measure_render_throughput(n=2000, image_size=112)
    dat = measure_dat_throughput(n=2000)
    return {
        "bench": "data",
        "faceparts_images_per_s": round(faceparts, 1),
        "faceparts_target_images_per_s": 2000,
        "casia_dat_images_per_s": round(dat, 1),
    }
