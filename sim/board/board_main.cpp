// The simulated board: the device top level (Verilator model of hw/device.py) with its host
// link on a TCP socket, so the host driver opens it like a serial port
// (pyserial: socket://127.0.0.1:PORT). One client at a time; the device keeps its state
// (model, image, results) across connections, as a board does across host sessions.
//
//   board_sim [--port N] [--cl=2 --rp=2 ...]
//
// --port 0 or absent: any free port. The --cl=... rules are the SDRAM chip model's
// (hw.sdram_chip.SDRAMTimings.harness_args): the device's SDRAM pins drive the model
// (sdram_model.h) every cycle, and the first broken timing rule stops the board with the rule,
// the command, the address and the cycle on stderr (exit status 3).
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

#include "sdram_model.h"
#include "verilated.h"

// Two builds of this harness. By default the top is hw/device.py's Device, whose link is a pair
// of byte streams: the harness moves socket bytes into rx and tx bytes out (Verilator spells
// the stream ports rx__valid etc. with its escape for a double underscore). With UART_DIVISOR
// defined the top is hw/serial_device.py's SerialDevice and the link is two lines: the harness
// is the host's UART (the FT231X), sending each socket byte as 8N1 bits of UART_DIVISOR cycles
// on rx and decoding tx at the middle of every bit.
#ifdef UART_DIVISOR
#include "Vserial_device.h"
using Top = Vserial_device;
#else
#include "Vdevice.h"
using Top = Vdevice;
#endif

static void tick(Top* top) {
    top->clk = 0;
    top->eval();
}

static void tock(Top* top) {
    top->clk = 1;
    top->eval();
}

#ifdef UART_DIVISOR
// The host's side of the UART, one clock cycle at a time.
struct HostUart {
    int bits = 0, timer = 0;             // sender: bits of the frame still to send
    unsigned frame = 0;
    int rx_state = -1, rx_timer = 0;     // receiver: -1 idle, 0..8 data bits, 9 stop bit
    unsigned rx_byte = 0;
    long framing_errors = 0;
    // The line level for this cycle; takes the next byte from ``q`` when idle.
    int line(std::deque<unsigned char>& q) {
        if (bits == 0 && !q.empty()) {
            frame = (1u << 9) | (unsigned(q.front()) << 1);
            q.pop_front();
            bits = 10;
            timer = UART_DIVISOR;
        }
        if (bits == 0) return 1;
        int level = frame & 1;
        if (--timer == 0) {
            frame >>= 1;
            --bits;
            timer = UART_DIVISOR;
        }
        return level;
    }
    // Decodes the device's tx line; returns a byte when its stop bit is sampled.
    int sample(int level) {
        if (rx_state < 0) {
            if (!level) { rx_state = 0; rx_timer = UART_DIVISOR + UART_DIVISOR / 2; rx_byte = 0; }
            return -1;
        }
        if (--rx_timer) return -1;
        rx_timer = UART_DIVISOR;
        if (rx_state < 8) { rx_byte |= unsigned(level) << rx_state; ++rx_state; return -1; }
        rx_state = -1;
        if (!level) { ++framing_errors; return -1; }
        return int(rx_byte);
    }
};
#endif

// The SDRAM's pins after their registers, into the model; its word back for the next edge.
static void sdram_edge(Top* top, SdramModel& chip) {
    SdramPins p = chip_pins(top);
    if (!chip.edge(p)) {
        std::fprintf(stderr, "board_sim: %s\n", chip.error().c_str());
        std::exit(3);
    }
    uint16_t dq = 0;
    chip.dq_for_next_edge(&dq);
    top->chip___05Fdq_i = dq;
}

int main(int argc, char** argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--port") port = std::atoi(argv[i + 1]);
    SdramRules rules;
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        parse_rule(a, rules);
    }
    static SdramModel chip(rules);
    // Faults for the bring-up tests: --stuck-bit=B --stuck-value=V, --short-lo=L --short-hi=H.
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        parse_fault(a, chip);
    }
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
    auto* top = new Top{ctx};
#ifdef UART_DIVISOR
    top->rx = 1;
    HostUart uart;
#else
    top->rx___05Fvalid = 0;
    top->tx___05Fready = 1;
#endif
    top->rst = 1;
    for (int i = 0; i < 4; ++i) { tick(top); tock(top); sdram_edge(top, chip); }
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
#ifdef UART_DIVISOR
            top->rx = uart.line(rx);
            tick(top);
            int byte = uart.sample(top->tx);
            if (byte >= 0) { tx.push_back((unsigned char)byte); quiet = 0; }
            bool tx_idle = uart.rx_state < 0 && top->tx;
            if (uart.bits) quiet = 0;
#else
            top->rx___05Fvalid = !rx.empty();
            top->rx___05Fpayload = rx.empty() ? 0 : rx.front();
            tick(top);
            if (top->rx___05Fvalid && top->rx___05Fready) rx.pop_front();
            if (top->tx___05Fvalid) { tx.push_back(top->tx___05Fpayload); quiet = 0; }
            bool tx_idle = !top->tx___05Fvalid;
#endif
            tock(top);
            sdram_edge(top, chip);
            ++cycle;
            ++quiet;
            if (!tx.empty() && (tx.size() >= 4096 || tx_idle)) {
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
