# A workload for the enforcement tests: an HTTP server whose requests make it do one thing each
# (connect, send, bind, open, exec, a burst of one syscall), so a test can record its normal behaviour
# and then ask it, under enforcement, for things it never did. Answers JSON {"ok": bool, "errno": name}.
import ctypes, errno, json, os, socket, socketserver, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
held = []

def result(fn):
    try:
        fn()
        return {'ok': True}
    except OSError as e:
        return {'ok': False, 'errno': errno.errorcode.get(e.errno, str(e.errno))}
    except subprocess.CalledProcessError as e:
        return {'ok': False, 'errno': 'exit%d' % e.returncode}

def connect(q):
    proto = q.get('proto', 'tcp')
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == 'udp' else socket.SOCK_STREAM)
    s.settimeout(float(q.get('timeout', '2')))
    try:
        if proto == 'udp':
            s.sendto(b'probe', (q['host'], int(q['port'])))
        else:
            s.connect((q['host'], int(q['port'])))
    finally:
        s.close()

def bind(q):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if q.get('proto') == 'udp' else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((q.get('addr', '0.0.0.0'), int(q['port'])))
    if q.get('proto') != 'udp':
        s.listen(16)
    held.append(s)

def read(q):
    with open(q['path'], 'rb') as f:
        f.read()

def run(q):
    subprocess.run([q['path']] + q.get('args', '').split(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)

def burst(q):
    nr, n, failed = int(q['nr']), int(q['n']), 0
    for _ in range(n):
        if libc.syscall(nr, 0, 0, 0, 0, 0) < 0:
            failed += 1
    if n and failed != n:
        raise OSError(errno.EINVAL, 'only %d of %d failed' % (failed, n))

ACTIONS = {'connect': connect, 'bind': bind, 'open': read, 'exec': run, 'burst': burst, 'ping': lambda q: None}

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        action = ACTIONS.get(url.path.strip('/'))
        body = json.dumps(result(lambda: action(q)) if action else {'ok': False, 'errno': 'ENOENT'}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(HTTPServer):
    # HTTPServer.server_bind looks up the host's FQDN (a DNS query): not part of this workload's job.
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = 'probe', self.server_address[1]

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
server = Server(('0.0.0.0', port), Handler)
print('probe-server listening on %d' % port, flush=True)
server.serve_forever()
