"""A stand-in for Microsoft Entra ID's token endpoint, for tests that have no Azure tenant.

Serves the client-credentials grant at POST /{tenant}/oauth2/v2.0/token: the expected
client id with the expected secret -- as `client_secret` (a service principal) or as a
federated `client_assertion` (workload identity, whose token file holds it) -- for scope
https://storage.azure.com/.default gets a bearer token for Azure Storage; anything else gets
HTTP 401 with Entra's error shape. It also serves a managed identity's token at
GET /metadata/identity/oauth2/token, as the instance metadata service (IMDS) does, for the
expected client id and resource https://storage.azure.com/ with the `Metadata: true` header.
Azurite, started with `--oauth basic`, checks a token's issuer, audience and lifetime but not
its signature, so the token is an unsigned JWT with those claims.

Usage: token_server.py PORT TENANT_ID CLIENT_ID CLIENT_SECRET
"""

import base64
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

PORT, TENANT, CLIENT_ID, SECRET = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token() -> str:
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{TENANT}/",
        "tid": TENANT,
        "appid": CLIENT_ID,
        "oid": CLIENT_ID,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
    }
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(b"unsigned")]
    )


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        federated = (
            form.get("client_assertion_type")
            == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            and form.get("client_assertion") == SECRET
        )
        ok = (
            self.path == f"/{TENANT}/oauth2/v2.0/token"
            and form.get("grant_type") == "client_credentials"
            and form.get("client_id") == CLIENT_ID
            and (form.get("client_secret") == SECRET or federated)
            and form.get("scope") == "https://storage.azure.com/.default"
        )
        if ok:
            self.reply(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": token()})
        else:
            self.reply(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )

    def do_GET(self):
        path, _, query = self.path.partition("?")
        q = {k: v[0] for k, v in parse_qs(query).items()}
        if (
            path == "/metadata/identity/oauth2/token"
            and self.headers.get("Metadata") == "true"
            and q.get("resource") == "https://storage.azure.com/"
            and q.get("client_id") == CLIENT_ID
        ):
            expires = int(time.time()) + 3600
            self.reply(
                200,
                {
                    "access_token": token(),
                    "expires_on": str(expires),
                    "expires_in": "3599",
                    "resource": "https://storage.azure.com/",
                    "token_type": "Bearer",
                },
            )
        else:
            self.reply(400, {"error": "invalid_request", "error_description": "Identity not found"})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("entra: " + fmt % args + "\n")


HTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
