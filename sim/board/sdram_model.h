// The ULX3S's SDR SDRAM for simulation: storage, CAS latency, and a check of every timing rule
// the datasheet states. The first rule broken stops the model with the rule, the command, its
// bank, row and column, and the cycle named (error()); the harness then exits non-zero.
//
// The rules come from the harness's command line, which hw.sdram_chip.SDRAMTimings writes
// (harness_args), so the controller and the model never disagree on a number.
//
// Pins are sampled once per edge of the chip's clock (edge()). The command signals arrive as
// the controller drives them, asserted high (cs, ras, cas, we); on the board the pins are their
// inverses. The chip's clock lags the system clock: a READ sampled at chip edge R has its word
// on DQ for system edge R + CL + 1 (dq_for_next_edge()).
//
// Storage is the whole chip, 2^24 16-bit words, indexed by the controller's word address
// ((row * banks + bank) * cols + column: hw.sdram_chip.split_address), so a test can read
// what the controller wrote. Faults for bring-up tests: a data bit stuck at 0 or 1, two
// address lines shorted (the higher one reads as the lower).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

struct SdramRules {
    int cl = 2, rp = 2, rcd = 2, ras = 5, rc = 7, rrd = 2, wr = 2, rfc = 7, mrd = 2;
    int refi = 781, power_up = 10000;
};

struct SdramPins {
    bool cke, cs, ras, cas, we;
    unsigned ba, a, dqm;
    uint16_t dq;
    bool dq_oe;
};

class SdramModel {
  public:
    static constexpr int BANKS = 4, ROWS = 8192, COLS = 512;
    static constexpr uint32_t WORDS = uint32_t(BANKS) * ROWS * COLS;
    static constexpr long NEVER = -(1L << 40);

    explicit SdramModel(const SdramRules& rules) : r(rules), mem(WORDS, 0) {
        for (auto& b : bank) b = Bank{};
    }

    // Counts, for the harness's report.
    long cycle = -1, reads = 0, writes = 0, activates = 0, precharges = 0, refreshes = 0;
    long max_refresh_gap = 0;

    // Faults: stuck_bit >= 0 forces that data bit to stuck_value on every read; a shorted
    // address pair (lo, hi) makes word-address bit hi read and write as bit lo.
    int stuck_bit = -1, stuck_value = 0, short_lo = -1, short_hi = -1;

    const std::string& error() const { return err; }
    bool failed() const { return !err.empty(); }

    // The word the chip drives for the next system edge, if a READ's data is due then.
    bool dq_for_next_edge(uint16_t* value) {
        while (!out.empty() && out.front().edge < cycle + 1) out.pop_front();
        if (!out.empty() && out.front().edge == cycle + 1) {
            *value = out.front().value;
            return true;
        }
        return false;
    }

    uint16_t peek(uint32_t word) const { return mem[fold(word)]; }

    // One edge of the chip's clock. Returns false once a rule is broken.
    bool edge(const SdramPins& p) {
        ++cycle;
        if (failed()) return false;
        if (mode_set && cycle - last_refresh > r.refi)
            return fail_time("refresh interval", "no AUTO REFRESH", -1, -1, -1,
                             cycle - last_refresh, "since the last one", r.refi, true);
        // DQM masks the data the chip drives two edges on: a READ's word due then is lost.
        if (p.dqm)
            for (const auto& o : out)
                if (o.edge == cycle + 3)
                    return fail("DQM", "a READ's data", -1, -1, -1,
                                "masked by DQM two cycles before it leaves the chip");
        if (!p.cs || !p.cke) return true;                          // DESELECT
        const int code = (p.ras << 2) | (p.cas << 1) | p.we;
        if (code == 0) return true;                                 // NOP
        if (cycle < r.power_up)
            return fail_time("power-up", name(code), p.ba, -1, -1, cycle, "after power-up",
                             r.power_up);
        if (cycle - last_refresh < r.rfc)
            return fail_time("tRFC", name(code), p.ba, -1, -1, cycle - last_refresh,
                             "after AUTO REFRESH", r.rfc);
        if (cycle - last_mode < r.mrd)
            return fail_time("tMRD", name(code), p.ba, -1, -1, cycle - last_mode,
                             "after LOAD MODE REGISTER", r.mrd);
        switch (code) {
            case 0b100: return activate(p);
            case 0b010: return read(p);
            case 0b011: return write(p);
            case 0b101: return precharge(p);
            case 0b110: return refresh(p);
            case 0b111: return load_mode(p);
            default: return fail("command", name(code), p.ba, -1, -1,
                                 "a command this design never issues");
        }
    }

  private:
    struct Bank {
        bool active = false;
        int row = 0;
        long act = NEVER, pre = NEVER, write = NEVER;
    };
    struct Out {
        long edge;
        uint16_t value;
    };

    SdramRules r;
    std::vector<uint16_t> mem;
    Bank bank[BANKS];
    std::deque<Out> out;
    std::string err;
    long last_act = NEVER, last_refresh = NEVER, last_mode = NEVER, last_read = NEVER;
    int init_refreshes = 0, cl = 0;
    bool mode_set = false;

    static const char* name(int code) {
        static const char* names[] = {"NOP", "BURST TERMINATE", "READ", "WRITE",
                                      "ACTIVE", "PRECHARGE", "AUTO REFRESH", "LOAD MODE"};
        return names[code];
    }

    uint32_t fold(uint32_t word) const {
        if (short_lo >= 0) {
            uint32_t lo = (word >> short_lo) & 1;
            word = (word & ~(1u << short_hi)) | (lo << short_hi);
        }
        return word % WORDS;
    }

    uint32_t address(int b, int row, int col) const {
        return (uint32_t(row) * BANKS + uint32_t(b)) * COLS + uint32_t(col);
    }

    // "sdram model: tRCD violated at cycle 10019: READ bank 1 row 0x0005 column 0x040, 1 cycle
    // after ACTIVE; the rule is at least 2"
    bool fail_time(const char* rule, const char* cmd, int b, int row, int col, long got,
                   const char* after, long need, bool at_most = false) {
        char why[200];
        snprintf(why, sizeof why, "%ld cycle%s %s; the rule is at %s %ld", got,
                 got == 1 ? "" : "s", after, at_most ? "most" : "least", need);
        return fail(rule, cmd, b, row, col, why);
    }

    bool fail(const char* rule, const char* cmd, int b, int row, int col, const char* why) {
        char buf[400];
        char where[80] = "";
        if (b >= 0 && row >= 0)
            snprintf(where, sizeof where, " bank %d row 0x%04x column 0x%03x", b, row, col);
        else if (b >= 0)
            snprintf(where, sizeof where, " bank %d", b);
        snprintf(buf, sizeof buf, "sdram model: %s violated at cycle %ld: %s%s, %s", rule, cycle,
                 cmd, where, why);
        err = buf;
        return false;
    }

    bool ready_for_access(const char* cmd) {
        if (!mode_set)
            return fail("initialisation", cmd, -1, -1, -1,
                        "before LOAD MODE REGISTER: the mode register is not set");
        return true;
    }

    bool activate(const SdramPins& p) {
        const int b = p.ba, row = p.a & (ROWS - 1);
        if (!ready_for_access("ACTIVE")) return false;
        if (init_refreshes < 2)
            return fail("initialisation", "ACTIVE", b, row, 0,
                        "fewer than 2 AUTO REFRESH in the power-up sequence");
        Bank& k = bank[b];
        if (k.active)
            return fail("bank state", "ACTIVE", b, row, 0,
                        "the bank has a row open already (PRECHARGE first)");
        if (cycle - k.pre < r.rp)
            return fail_time("tRP", "ACTIVE", b, row, 0, cycle - k.pre, "after PRECHARGE", r.rp);
        if (cycle - k.act < r.rc)
            return fail_time("tRC", "ACTIVE", b, row, 0, cycle - k.act,
                             "after the bank's last ACTIVE", r.rc);
        if (cycle - last_act < r.rrd)
            return fail_time("tRRD", "ACTIVE", b, row, 0, cycle - last_act,
                             "after another bank's ACTIVE", r.rrd);
        k.active = true;
        k.row = row;
        k.act = last_act = cycle;
        ++activates;
        return true;
    }

    bool column(const SdramPins& p, const char* cmd, int* col) {
        const int b = p.ba;
        *col = p.a & (COLS - 1);
        if (!ready_for_access(cmd)) return false;
        Bank& k = bank[b];
        if (!k.active)
            return fail("bank state", cmd, b, -1, -1, "the bank is idle (ACTIVE first)");
        if (p.a & (1u << 10))
            return fail("auto precharge", cmd, b, k.row, *col,
                        "A10 set: this design never uses auto precharge");
        if (cycle - k.act < r.rcd)
            return fail_time("tRCD", cmd, b, k.row, *col, cycle - k.act, "after ACTIVE", r.rcd);
        return true;
    }

    bool read(const SdramPins& p) {
        int col;
        if (!column(p, "READ", &col)) return false;
        const Bank& k = bank[p.ba];
        if (p.dq_oe)
            return fail("bus contention", "READ", p.ba, k.row, col,
                        "the controller drives DQ too");
        uint16_t v = mem[fold(address(p.ba, k.row, col))];
        if (stuck_bit >= 0) v = (v & ~(1u << stuck_bit)) | (uint16_t(stuck_value) << stuck_bit);
        if (p.dqm && cl == 2)          // DQM masks the word two edges on: this READ's own
            return fail("DQM", "a READ's data", p.ba, k.row, col,
                        "masked by DQM two cycles before it leaves the chip");
        out.push_back({cycle + cl + 1, v});
        last_read = cycle;
        ++reads;
        return true;
    }

    bool write(const SdramPins& p) {
        int col;
        if (!column(p, "WRITE", &col)) return false;
        Bank& k = bank[p.ba];
        if (!p.dq_oe)
            return fail("bus contention", "WRITE", p.ba, k.row, col,
                        "the controller does not drive DQ");
        if (cycle - last_read < cl + 2)
            return fail_time("bus contention", "WRITE", p.ba, k.row, col, cycle - last_read,
                             "after a READ, whose data is on DQ until then", cl + 2);
        uint16_t& w = mem[fold(address(p.ba, k.row, col))];
        if (!(p.dqm & 1)) w = (w & 0xFF00) | (p.dq & 0x00FF);
        if (!(p.dqm & 2)) w = (w & 0x00FF) | (p.dq & 0xFF00);
        k.write = cycle;
        ++writes;
        return true;
    }

    bool close(int b) {
        Bank& k = bank[b];
        if (!k.active) return true;                                 // a NOP for an idle bank
        if (cycle - k.act < r.ras)
            return fail_time("tRAS", "PRECHARGE", b, k.row, 0, cycle - k.act, "after ACTIVE",
                             r.ras);
        if (cycle - k.write < r.wr)
            return fail_time("tWR", "PRECHARGE", b, k.row, 0, cycle - k.write,
                             "after the last WRITE", r.wr);
        k.active = false;
        k.pre = cycle;
        return true;
    }

    bool precharge(const SdramPins& p) {
        ++precharges;
        if (p.a & (1u << 10)) {
            for (int b = 0; b < BANKS; ++b)
                if (!close(b)) return false;
            for (auto& k : bank) k.pre = cycle;
            return true;
        }
        return close(p.ba);
    }

    bool refresh(const SdramPins& p) {
        for (int b = 0; b < BANKS; ++b) {
            if (bank[b].active)
                return fail("bank state", "AUTO REFRESH", b, bank[b].row, 0,
                            "the bank has a row open (PRECHARGE ALL first)");
            if (cycle - bank[b].pre < r.rp)
                return fail_time("tRP", "AUTO REFRESH", b, -1, -1, cycle - bank[b].pre,
                                 "after PRECHARGE", r.rp);
            if (cycle - bank[b].act < r.rc)
                return fail_time("tRC", "AUTO REFRESH", b, -1, -1, cycle - bank[b].act,
                                 "after ACTIVE", r.rc);
        }
        if (cycle - last_refresh < r.rc)
            return fail_time("tRC", "AUTO REFRESH", -1, -1, -1, cycle - last_refresh,
                             "after the last AUTO REFRESH", r.rc);
        if (mode_set && last_refresh > NEVER && cycle - last_refresh > max_refresh_gap)
            max_refresh_gap = cycle - last_refresh;
        last_refresh = cycle;
        if (!mode_set) ++init_refreshes;
        ++refreshes;
        return true;
    }

    bool load_mode(const SdramPins& p) {
        for (int b = 0; b < BANKS; ++b)
            if (bank[b].active)
                return fail("bank state", "LOAD MODE", b, bank[b].row, 0,
                            "the bank has a row open (every bank must be idle)");
        const unsigned burst = p.a & 7, latency = (p.a >> 4) & 7;
        if (burst != 0)
            return fail("mode register", "LOAD MODE", -1, -1, -1,
                        "a burst length above 1 (this design reads and writes single words)");
        if (p.a & (1u << 3))
            return fail("mode register", "LOAD MODE", -1, -1, -1,
                        "interleaved bursts (this design sets sequential)");
        if (int(latency) != r.cl)
        {
            char why[120];
            snprintf(why, sizeof why, "CAS latency %u set; the clock needs %d", latency, r.cl);
            return fail("mode register", "LOAD MODE", -1, -1, -1, why);
        }
        cl = latency;
        mode_set = true;
        last_mode = cycle;
        return true;
    }
};

// ---- what every harness needs -----------------------------------------------------------------

// One rule from a command-line argument (--cl=2, --rp=2, ...: the names of
// hw.sdram_chip.SDRAMTimings); false if the argument is not a rule.
inline bool parse_rule(const char* arg, SdramRules& r) {
    static const struct { const char* key; int SdramRules::*field; } keys[] = {
        {"--cl", &SdramRules::cl}, {"--rp", &SdramRules::rp}, {"--rcd", &SdramRules::rcd},
        {"--ras", &SdramRules::ras}, {"--rc", &SdramRules::rc}, {"--rrd", &SdramRules::rrd},
        {"--wr", &SdramRules::wr}, {"--rfc", &SdramRules::rfc}, {"--mrd", &SdramRules::mrd},
        {"--refi", &SdramRules::refi}, {"--power_up", &SdramRules::power_up}};
    for (const auto& k : keys) {
        size_t n = std::strlen(k.key);
        if (std::strncmp(arg, k.key, n) == 0 && arg[n] == '=') {
            r.*k.field = std::atoi(arg + n + 1);
            return true;
        }
    }
    return false;
}

// One injected fault from a command-line argument (--stuck-bit=B, --stuck-value=V,
// --short-lo=L, --short-hi=H); false if the argument is not one.
inline bool parse_fault(const char* arg, SdramModel& chip) {
    static const struct { const char* key; int SdramModel::*field; } keys[] = {
        {"--stuck-bit", &SdramModel::stuck_bit}, {"--stuck-value", &SdramModel::stuck_value},
        {"--short-lo", &SdramModel::short_lo}, {"--short-hi", &SdramModel::short_hi}};
    for (const auto& k : keys) {
        size_t n = std::strlen(k.key);
        if (std::strncmp(arg, k.key, n) == 0 && arg[n] == '=') {
            chip.*k.field = std::atoi(arg + n + 1);
            return true;
        }
    }
    return false;
}

// A Verilated top held in reset for four clock edges, then released.
template <class Top>
void reset_top(Top* top) {
    top->rst = 1;
    for (int i = 0; i < 4; ++i) {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
    }
    top->rst = 0;
}

// The chip's pins of a Verilated top whose SDRAM port is ``chip`` (Verilator spells chip__cs
// as chip___05Fcs).
template <class Top>
SdramPins chip_pins(const Top* top) {
    return SdramPins{bool(top->chip___05Fcke), bool(top->chip___05Fcs), bool(top->chip___05Fras),
                     bool(top->chip___05Fcas), bool(top->chip___05Fwe), top->chip___05Fba,
                     top->chip___05Fa, top->chip___05Fdqm, top->chip___05Fdq_o,
                     bool(top->chip___05Fdq_oe)};
}
