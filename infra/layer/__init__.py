"""The Lambda layer that carries yfinance and its heavy stack (pandas, numpy, curl_cffi, lxml)."""
