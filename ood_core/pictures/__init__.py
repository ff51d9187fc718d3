"""Pictures for galleries: Grad-CAM, NAP's channel peaks and overlays drawn on cached samples' images."""
