"""Locations of the shared test data (../shared beside the repository)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VISIONREWARD = SHARED / "visionreward"
MEDIA = SHARED / "media"
PREFERENCES = SHARED / "preferences"

VR_IMAGE_QA = VISIONREWARD / "VisionReward_Image" / "VisionReward_image_qa_select.txt"
VR_IMAGE_W = VISIONREWARD / "VisionReward_Image" / "weight_select.json"
VR_VIDEO_QA = VISIONREWARD / "VisionReward_Video" / "VisionReward_video_qa_select.txt"
VR_VIDEO_W = VISIONREWARD / "VisionReward_Video" / "weight.json"
VR_DIMS = VISIONREWARD / "dimensions.json"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not found: {path}")
    return path
