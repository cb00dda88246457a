"""Whitespace tokens in the one spelling the intent model learns: `normalize_for_nlu`.

Residents type the same word many ways: "HELPPPP", Arabic with or without vowel marks and
tatweel, hamza forms, "está"/"esta", "não"/"nao". Rasa's featurizers count word and character
n-grams of the tokens, so every variant is a different feature unless the tokens are
normalised first. This tokenizer splits exactly like Rasa's WhitespaceTokenizer (the token
offsets still point into the original text) and then normalises each token's text; the
message text itself is untouched, so slots filled from the text keep what the reporter wrote.

The same function runs for training examples and for live messages, so the model never sees
a spelling that the normaliser would not produce.
"""

from __future__ import annotations

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.tokenizers.tokenizer import Token
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.nlu.training_data.message import Message

from nlu.normalize import normalize_token


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class NormalizingWhitespaceTokenizer(WhitespaceTokenizer):
    """WhitespaceTokenizer whose tokens are normalised (see the module docstring)."""

    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        tokens = []
        for token in super().tokenize(message, attribute):
            normalized = normalize_token(token.text)
            if normalized:
                token.text = normalized
                token.lemma = normalized
                tokens.append(token)
        # A text of nothing but marks keeps Rasa's rule: at least one token.
        return tokens or super().tokenize(message, attribute)
