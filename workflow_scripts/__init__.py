"""genda-pse: personalized speech enhancement from zero-shot TTS, step by step.

Each step is a module with a `main()` that the Snakemake rules call through
`python -m workflow_scripts.<step>`; the other modules are library code.
"""

__version__ = "0.1.0"
