"""medloop: whole-course chronic-disease care platform."""
