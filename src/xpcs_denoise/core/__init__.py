"""Layer 0 — the physics on arrays (numpy, scipy): errors and input validation, Eq. 1/2 correlation, contrast
scaling (Eq. 4–7), the sliding window, Eq. 3 fits, the speckle simulator, bad frames. Imports nothing above it."""
