"""The naive baseline for benchmarks/load.py: prompt | HuggingFacePipeline | StrOutputParser on LangServe,
wired the way the LangChain docs show it (one pipeline call per request, in executor threads).

Not part of hfchain (which keeps langserve inside server/): a stand-in for "the usual way".
Usage: python benchmarks/naive_app.py MODEL_FOLDER PORT
"""

from __future__ import annotations

import sys

import torch
import uvicorn
from fastapi import FastAPI
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_huggingface import HuggingFacePipeline
from langserve import add_routes

NEW_TOKENS = 128


def create_app(folder: str) -> FastAPI:
    """The baseline app over the model in `folder` (greedy, exactly NEW_TOKENS new tokens)."""
    llm = HuggingFacePipeline.from_model_id(
        model_id=folder,
        task="text-generation",
        model_kwargs={"dtype": torch.float32},  # as hfchain computes (the cached weights are fp16)
        pipeline_kwargs={
            "max_new_tokens": NEW_TOKENS,
            "min_new_tokens": NEW_TOKENS,
            "do_sample": False,
            "return_full_text": False,
        },
    )
    chain = PromptTemplate.from_template("{prompt}") | llm | StrOutputParser()
    app = FastAPI(title="naive LangServe app")
    add_routes(app, chain, path="/generate")

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
