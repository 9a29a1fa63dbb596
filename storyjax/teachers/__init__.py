"""Teachers that grade stories on readability, narrative coherence and creativity (0–3 each)."""
