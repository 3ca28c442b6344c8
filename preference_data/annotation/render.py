"""Safe rendering of prompts and responses: markdown with highlighted code, never raw HTML.

markdown-it-py (CommonMark) with `html` off escapes any HTML in the text, and its link validator
refuses `javascript:`/`vbscript:`/`data:` (except images) URLs; code blocks are highlighted by
Pygments, which escapes its input. Links open with rel="noopener noreferrer nofollow" and images
are shown as their alt text (the page's CSP would block remote images anyway, and a response must
not be able to make the annotator's browser fetch a URL).
"""

from __future__ import annotations

from functools import lru_cache
from html import escape
from typing import Any

from markupsafe import Markup


def _highlight(code: str, lang: str, _attrs: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes and wraps the code itself
    return highlight(code, lexer, HtmlFormatter(nowrap=True))


@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False,
                                   "highlight": _highlight}).enable("table").enable("strikethrough")

    def link_open(renderer, tokens, idx, options, env):  # type: ignore[no-untyped-def]
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        tokens[idx].attrSet("target", "_blank")
        return renderer.renderToken(tokens, idx, options, env)

    def image(renderer, tokens, idx, options, env):  # type: ignore[no-untyped-def]
        alt = "".join(t.content for t in (tokens[idx].children or []))
        return f'<span class="img-alt">[image: {escape(alt)}]</span>'

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    return md


def render_markdown(text: str) -> Markup:
    """Markdown -> HTML that contains no HTML from `text` itself."""
    return Markup(_parser().render(text))


def render_text(text: str, markdown: bool = True) -> Markup:
    """Markdown when enabled, else the escaped text in a pre-wrapped block."""
    if markdown:
        return render_markdown(text)
    return Markup('<div class="plain">') + escape(text) + Markup("</div>")


def pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter().get_style_defs(".md pre code")
