"""TreeSynth Studio's engine: tree-guided synthetic data generation, headless and UI-agnostic."""
