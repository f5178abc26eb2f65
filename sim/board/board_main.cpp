// The simulated board: the device top level (Verilator model of hw/device.py) with its host
// link on a TCP socket, so the host driver opens it like a serial port
// (pyserial: socket://127.0.0.1:PORT). One client at a time; the device keeps its state
// (model, image, results) across connections, as a board does across host sessions.
//
//   board_sim [--port N]        (0 or absent: any free port)
//
// Prints "listening on PORT" once the socket is bound. The clock runs freely while a client is
// connected (so the device's link timeout counts as it would on a board); after 2^24 cycles
// without a byte in either direction it slows to about a thousand cycles per millisecond, so
// an idle board does not hold a CPU.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "Vdevice.h"
#include "verilated.h"

// Verilator spells the stream ports rx__valid etc. with its escape for a double underscore.

static void tick(Vdevice* top) {
    top->clk = 0;
    top->eval();
}

static void tock(Vdevice* top) {
    top->clk = 1;
    top->eval();
}

int main(int argc, char** argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--port") port = std::atoi(argv[i + 1]);
    std::signal(SIGPIPE, SIG_IGN);

    int srv = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (bind(srv, (sockaddr*)&addr, sizeof addr) || listen(srv, 1)) {
        std::fprintf(stderr, "board_sim: cannot listen on port %d: %s\n", port, std::strerror(errno));
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(srv, (sockaddr*)&addr, &len);
    std::printf("listening on %d\n", ntohs(addr.sin_port));
    std::fflush(stdout);

    auto* ctx = new VerilatedContext;
    auto* top = new Vdevice{ctx};
    top->rx___05Fvalid = 0;
    top->tx___05Fready = 1;
    top->rst = 1;
    for (int i = 0; i < 4; ++i) { tick(top); tock(top); }
    top->rst = 0;

    for (;;) {
        int cl = accept(srv, nullptr, nullptr);
        if (cl < 0) continue;
        setsockopt(cl, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::deque<unsigned char> rx;
        std::vector<unsigned char> tx;
        unsigned char buf[65536];
        unsigned long long quiet = 0, cycle = 0;
        bool open = true;
        while (open) {
            // The socket is looked at every 1024 cycles, or at once when the device has
            // drained what came in.
            if ((cycle & 1023) == 0 || (rx.empty() && (cycle & 63) == 0)) {
                pollfd p{cl, POLLIN, 0};
                int wait_ms = quiet > (1ull << 24) ? 1 : 0;
                if (poll(&p, 1, wait_ms) > 0) {
                    ssize_t n = recv(cl, buf, sizeof buf, MSG_DONTWAIT);
                    if (n > 0) { rx.insert(rx.end(), buf, buf + n); quiet = 0; }
                    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) open = false;
                }
            }
            top->rx___05Fvalid = !rx.empty();
            top->rx___05Fpayload = rx.empty() ? 0 : rx.front();
            tick(top);
            if (top->rx___05Fvalid && top->rx___05Fready) rx.pop_front();
            if (top->tx___05Fvalid) { tx.push_back(top->tx___05Fpayload); quiet = 0; }
            tock(top);
            ++cycle;
            ++quiet;
            if (!tx.empty() && (tx.size() >= 4096 || !top->tx___05Fvalid)) {
                size_t off = 0;
                while (off < tx.size()) {
                    ssize_t n = send(cl, tx.data() + off, tx.size() - off, 0);
                    if (n <= 0) { open = false; break; }
                    off += n;
                }
                tx.clear();
            }
        }
        close(cl);
    }
}
