"""Verifies an agent card's signatures with the a2a-sdk (1.3.0) verifier.

Usage: verify_card.py CARD_URL JWK_JSON

Fetches the card, parses it as the SDK's AgentCard (as the SDK client
does), and checks it with `a2a.utils.signing.create_signature_verifier`
against the one public key given. Prints `ok verified` when a signature
verifies; then changes the card's first interface URL and prints
`ok tampered-refused` when the SDK refuses that copy. Exits non-zero on any
other outcome.
"""

import json
import sys
import urllib.request

from google.protobuf.json_format import ParseDict
from jwt.api_jwk import PyJWK

from a2a.types import AgentCard
from a2a.utils.signing import InvalidSignaturesError, create_signature_verifier


def main() -> int:
    card_url, jwk_json = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(card_url, timeout=30) as response:
        document = json.load(response)
    key = PyJWK.from_dict(json.loads(jwk_json))
    verify = create_signature_verifier(lambda kid, jku: key, ["EdDSA", "ES256", "RS256"])

    card = ParseDict(document, AgentCard(), ignore_unknown_fields=True)
    verify(card)
    print("ok verified")

    card.supported_interfaces[0].url = "http://evil.example/"
    try:
        verify(card)
    except InvalidSignaturesError:
        print("ok tampered-refused")
        return 0
    print("tampered card verified", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
