"""What post 1 (``seeds/002_7ca0d68a1f069fae.txt``) reports for each analysis, quoted
beside our measurement in the report. These are the source's numbers for its models
(EnCodec and Toy-SampleCNN first layers, FMA small); they are never used as results.
"""

from __future__ import annotations

TITLES = {
    "coverage": "Coverage: vectors assigned to their nearest direction",
    "reconstruction": "Reconstruction error against the number of top directions",
    "usage": "Usage: share of vectors in which each direction is strongly active",
    "redundancy": "Redundancy: cosine similarity of the most used directions",
    "stability": "Seed stability: Hungarian-matched cosine of the top directions",
    "data": "Data dependence: real-like, white noise and flat inputs",
    "weights": "Weights dependence: trained, random and handcrafted first-layer filters",
    "locality": "Locality: predicting the top archetype from the starting vector",
    "fragments": "Fragments: waveforms behind a direction, their spectra, narrowband measure",
    "trajectories": "Trajectories: 2-D projection for a sine, a music-like clip and noise",
}

POST1 = {
    "coverage": (
        "Post 1, section 1.3: 'Roughly 96% of activation vectors could be assigned to their nearest feature "
        "direction with a mean cosine similarity of 0.94' (features of the first layer; the assignment "
        "threshold is not stated)."
    ),
    "reconstruction": (
        "Post 1, section 1.5.2, Figure 7: all 128 archetypes reconstruct transitions to numerical "
        "precision (~1e-14); the top 20 archetypes give ~1e-6; the top 20 found by sparse dictionary "
        "learning also ~1e-6; 20 random directions ~0.43. Figure 7b: a transition rebuilt from 4 "
        "archetypes keeps its peaks and troughs, slightly compressed. (The post does not define its "
        "error measure; ours is stated in the summary.)"
    ),
    "usage": (
        "Post 1, section 1.5.1, Figure 5a: 'most transitions are captured by a relatively small subset "
        "(roughly 20 out of 128), while the remaining directions are only rarely used'."
    ),
    "redundancy": (
        "Post 1, section 1.5.1, Figure 5b (cosine matrix of the top 20 archetypes) and Figure 6: 'While "
        "there is some similarity between a few pairs, most off-diagonal entries remain relatively low'; "
        "archetypes 9 and 15 show distinct filter patterns."
    ),
    "stability": (
        "Post 1, section 1.5: across seeds 'the most frequently used archetypes showed consistent alignment "
        "across runs (mean cosine similarity ~0.7 after matching)'; the tails varied."
    ),
    "data": (
        "Post 1, section 1.5.4, Figure 8: real audio (FMA small) has the most concentrated usage; noise is more "
        "diffuse, 'extending to ~50 directions'; flat signals collapse 'entirely into the lowest-rank "
        "direction'. Mean top-1 cosine with the baseline archetypes: real ~0.88, noise ~0.71."
    ),
    "weights": (
        "Post 1, section 1.5.3: trained and random first layers 'produced a similar number of archetypes and "
        "similar usage patterns'; handcrafted filters for shapes rare in real audio gave 'much weaker and less "
        "coherent motion, and thus a denser basis'. (No figure or number is given.)"
    ),
    "locality": (
        "Post 1, section 1.5.5: a logistic regression predicting the top archetype among the 20 most used "
        "reached ~85% accuracy against ~5% chance; dispersion radius per archetype 0.6 to 3.2 (archetype "
        "104: 0.6, n 11766; 23: 1.6; 71: 2.5; 0 and 125: 3.2) against a random baseline of 4.1."
    ),
    "fragments": (
        "Post 1, Figures 2b and 3 (features 0 and 1) and Figure 4 (archetype 93): spectra of the "
        "max-activating fragments are broad and peaky at the low end, with no narrowband peak (a "
        "narrowband detector would show e.g. a 20 Hz-wide bump at 400 Hz, the rest near 0); a 7-tap filter "
        "at 24 kHz has a main lobe of ~3400 Hz. Archetype 93's top generators have cosine ~0.90 with it vs "
        "~0.20 for random generators; its aligned fragments share a trough-then-rise about two filter "
        "lengths long."
    ),
    "trajectories": (
        "Post 1, section 1.5.6, Figure 9: the sine gives a smooth trajectory, a real sample a "
        "structured, largely smooth one, broadband noise 'jagged and irregular motion'."
    ),
}
