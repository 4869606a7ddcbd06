"""Working from MegaDetector's boxes: crops (clips --detections) and scans (scan --detections) of
images and video frames, each decoded once."""
