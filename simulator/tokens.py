"""The simulator counts with the gateway's real tokenizer (o200k_base, routing/tokens.py), so the usage it
reports is what OpenAI would report for the same text, and it streams text one real token at a time."""

from routing.tokens import count_text, o200k

IMAGE_TOKENS = 85  # OpenAI's flat cost of a low-detail image
MEDIA_TOKENS = 100  # audio and file parts
MESSAGE_OVERHEAD = 4


def count_tokens(text: str) -> int:
    return count_text(text)


def pieces(text: str) -> list[str]:
    """Split text into one-token pieces that join back to text (a character whose UTF-8 bytes span several
    tokens stays whole, in one piece)."""
    encoding, out, pending = o200k(), [], b""
    for token in encoding.encode_ordinary(text):
        pending += encoding.decode_single_token_bytes(token)
        try:
            out.append(pending.decode())
        except UnicodeDecodeError:
            continue  # the rest of this character is in the next token
        pending = b""
    return out
