"""Text data: corpora, tokenizers, token shards, fixed-length blocks and the LM DataModule."""
