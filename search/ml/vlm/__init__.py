"""Image describers, one module per backend, behind one `Describer` protocol::

    describer = get_describer()            # search.ml.registry; None when descriptions are off
    text = describer.describe(image, prompt, max_new_tokens=128, on_piece=save_progress)
    # the task writes the pieces into the row as they come

- `base`: the protocol, the `Described` value, the errors, the pixel bounds both backends share.
- `transformers`: Qwen2-VL in this process (torch + transformers), streamed per word.
- `openai`: a streaming client for OpenAI-compatible servers (vLLM, SGLang, Ollama); no torch.
- `int8`: the int8 weight-only decode kernel the transformers backend uses on CPUs.

Importing this package, `base` or `openai` imports no torch and no transformers.
"""
