"""hfchain's HTTP service: FastAPI + LangServe routes over the chains."""
