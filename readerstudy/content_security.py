"""The Content-Security-Policy of every response: what a page of this site may load and run.

Everything comes from this site only. Scripts only from its files: no inline script, no event handler attribute,
no eval (the viewer bundle needs none). Two allowances, both for the dashboard's and the report's figures, which
are matplotlib SVG inline in the page: inline styles (their ``style`` attributes and ``<style>`` elements; the
report, the admin and DRF's browsable API have a few too) and ``data:`` images (the PNG rasters they embed).
No plugins, no ``<base>`` elsewhere, no framing by any page (X-Frame-Options DENY says so to older browsers),
forms post to this site only. A response that already has a policy keeps its own.
"""

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


def content_security_policy(get_response):
    """Middleware: sets ``Content-Security-Policy`` to ``POLICY`` on each response that has none."""

    def middleware(request):
        response = get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response

    return middleware
