"""A stand-in for the llama-server binary, for testing LlamaServer's process handling without weights.

Behaviour is chosen with FAKE_LLAMA_MODE: ``ok`` serves /health on --port; ``die`` writes a few log lines
and exits 1 (like a server that cannot load its model); ``die-later`` becomes healthy, then exits after
FAKE_LLAMA_DIE_AFTER seconds.
"""

import http.server
import os
import sys
import threading
import time

args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
mode = os.environ.get("FAKE_LLAMA_MODE", "ok")
print("fake llama-server starting", flush=True)
if mode == "die":
    print("llama_model_load: error loading model: tensor 'blk.0' data is not within file bounds", flush=True)
    print("main: exiting due to model loading error", flush=True)
    sys.exit(1)


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *a: object) -> None:
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Health)
if mode == "die-later":

    def die() -> None:
        time.sleep(float(os.environ.get("FAKE_LLAMA_DIE_AFTER", "1")))
        print("GGML_ASSERT failed: out of memory", flush=True)
        os._exit(3)

    threading.Thread(target=die, daemon=True).start()
server.serve_forever()
