"""A login journey against the simulated app's protected area, as a config mapping."""

from __future__ import annotations

from typing import Any

PASSWORD = "s3cret-Journey-pw"  # noqa: S105 - the simulated app's, in tests only
"""The simulated app's password in these tests; it must never show on any surface."""


def login_journey(port: int, capture: str = "$.token", timeout: str = "2s") -> dict[str, Any]:
    """A target: log in (POST, not judged), capture the token, then two protected pages."""
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer {{ token }}"}
    return {
        "name": "account",
        "journey": {
            "allow_methods": ["POST"],
            "secrets": {"password": {"env": "APP_PASSWORD"}},
            "steps": [
                {
                    "name": "login",
                    "judged": False,
                    "http": {
                        "method": "POST",
                        "url": f"{base}/login",
                        "headers": {"Content-Type": "application/json"},
                        "body": '{"user": "demo", "password": {{ password | tojson }}}',
                        "timeout": timeout,
                    },
                    "capture": {"token": {"json": capture}},
                },
                {
                    "name": "orders",
                    "http": {"url": f"{base}/account/orders", "headers": auth, "timeout": timeout},
                },
                {
                    "name": "profile",
                    "http": {"url": f"{base}/account/profile", "headers": auth, "timeout": timeout},
                },
            ],
        },
    }
