"""Models: the token LM, control guidance, tokenizer and builders."""
