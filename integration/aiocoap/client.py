"""aiocoap as an independent CoAP client for the integration suite (integration/src/aiocoap.rs).

Reads a JSON list of requests on stdin, sends them one after the other from one aiocoap client
context, and writes a JSON list of answers on stdout. Each request:

    {"method": "GET"|"POST"|"PUT"|"DELETE", "uri": "coap://127.0.0.1:5683/~/id-in/cse-base",
     "options": [[number, "hex value"], ...], "payload": "hex", "non": false}

Block-wise transfer (RFC 7959) is aiocoap's own: a payload over one block goes with Block1, an
answer with Block2 is fetched whole. Each answer:

    {"code": [class, detail], "mtype": "ACK"|"NON"|"CON", "options": [[number, "hex"], ...],
     "payload": "hex"}  (the block options left out: aiocoap reassembles)

or {"error": "text"}.
"""

import asyncio
import json
import sys

from aiocoap import CON, NON, Code, Context, Message, optiontypes
from aiocoap.numbers.optionnumbers import OptionNumber


async def send(ctx, r):
    msg = Message(
        code=getattr(Code, r["method"]),
        uri=r["uri"],
        mtype=NON if r.get("non") else CON,
        payload=bytes.fromhex(r.get("payload", "")),
    )
    for number, value in r.get("options", []):
        msg.opt.add_option(optiontypes.OpaqueOption(OptionNumber(number), bytes.fromhex(value)))
    answer = await asyncio.wait_for(ctx.request(msg).response, timeout=30)
    options = [[int(o.number), o.encode().hex()] for o in answer.opt.option_list()]
    return {
        "code": [int(answer.code) >> 5, int(answer.code) & 0x1F],
        "mtype": str(answer.mtype),
        "options": [o for o in options if o[0] not in (23, 27, 28, 60)],
        "payload": answer.payload.hex(),
    }


async def main():
    requests = json.load(sys.stdin)
    ctx = await Context.create_client_context()
    out = []
    for r in requests:
        try:
            out.append(await send(ctx, r))
        except Exception as e:  # reported to the test, which fails on it
            out.append({"error": f"{type(e).__name__}: {e}"})
    await ctx.shutdown()
    json.dump(out, sys.stdout)


asyncio.run(main())
