"""Signs an agent card with the a2a-sdk (1.3.0) signer, for the registry's
interop test.

Usage: sign_card.py < card.json

Reads a card (JSON) on stdin, parses it as the SDK's AgentCard, signs it
with a fresh P-256 key through `a2a.utils.signing.create_agent_card_signer`
(ES256, kid `sdk-key-1`, typ JOSE) and prints one JSON object:
`{"card": <the signed card as the SDK serialises it>, "jwk": <public JWK>}`.
"""

import json
import sys

from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.json_format import MessageToDict, ParseDict
from jwt.algorithms import ECAlgorithm

from a2a.types import AgentCard
from a2a.utils.signing import create_agent_card_signer


def main() -> int:
    card = ParseDict(json.load(sys.stdin), AgentCard(), ignore_unknown_fields=True)
    private_key = ec.generate_private_key(ec.SECP256R1())
    sign = create_agent_card_signer(
        private_key, {"kid": "sdk-key-1", "alg": "ES256", "typ": "JOSE"}
    )
    signed = sign(card)
    jwk = json.loads(ECAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": "sdk-key-1", "alg": "ES256", "use": "sig"})
    print(json.dumps({"card": MessageToDict(signed), "jwk": jwk}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
