"""A minimal server speaking TGI's text-generation protocol over a real transformers model.

Test fixture for the endpoint backend: `python tgi_responder.py --model FOLDER --port P`.
POST / takes {"inputs", "parameters", "stream"}; replies [{"generated_text"}] or SSE token events.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer


class TokenQueue(BaseStreamer):
    """Receives new token ids from generate() and hands them to the HTTP response."""

    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            self.items.put(token_id)

    def end(self) -> None:
        self.items.put(None)


def create_app(folder: str) -> FastAPI:
    """The responder app over the model in `folder`."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    lock = threading.Lock()
    app = FastAPI()

    def generate(prompt: str, params: dict, streamer: BaseStreamer | None = None) -> str:
        ids = tokenizer(prompt, return_tensors="pt")
        kwargs = {
            "max_new_tokens": params.get("max_new_tokens") or 20,
            "do_sample": bool(params.get("do_sample")),
        }
        if kwargs["do_sample"]:
            kwargs.update(temperature=params.get("temperature") or 1.0, top_p=params.get("top_p") or 1.0)
        if params.get("stop"):
            kwargs.update(stop_strings=params["stop"], tokenizer=tokenizer)
        if params.get("seed") is not None:
            torch.manual_seed(params["seed"])
        with lock:
            out = model.generate(**ids, streamer=streamer, pad_token_id=tokenizer.eos_token_id, **kwargs)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    @app.post("/")
    async def text_generation(request: Request):
        body = await request.json()
        prompt, params = body["inputs"], body.get("parameters") or {}
        if not body.get("stream"):
            return JSONResponse([{"generated_text": generate(prompt, params)}])
        streamer = TokenQueue()
        threading.Thread(target=generate, args=(prompt, params, streamer), daemon=True).start()

        def events():
            while (token_id := streamer.items.get()) is not None:
                token = {
                    "id": token_id,
                    "text": tokenizer.decode([token_id]),
                    "logprob": 0.0,
                    "special": False,
                }
                yield f"data:{json.dumps({'token': token, 'generated_text': None, 'details': None})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")
