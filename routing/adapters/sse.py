"""The one SSE reader every upstream stream goes through (routing/relay/views.py feeds its lines to the
adapters' `stream_events` and to the OpenAI passthrough).

Lines come out without their line endings, blank lines (event ends) dropped. The `data:` fields of one event
are joined into one `data:` line with "\n", as the SSE spec joins them (a JSON payload pretty-printed over
several lines stays valid JSON); `event:`, `id:` and comment lines pass as they are. A one-line event, what
every known provider sends, costs nothing more than stripping its line ending."""
from collections.abc import AsyncIterable, AsyncIterator


async def sse_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """`chunks`: the upstream body line by line (aiohttp's `resp.content`), line endings included."""
    pending = None   # the data line(s) of the event being read
    async for raw in chunks:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            if pending is None:
                pending = line
            else:  # a second data field of the same event
                value = line[5:]
                pending += b"\n" + (value[1:] if value.startswith(b" ") else value)
            continue
        if pending is not None:
            yield pending
            pending = None
        if line:
            yield line
    if pending is not None:
        yield pending
