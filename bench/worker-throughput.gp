# Worker throughput against jobs in flight, with the ideal (in flight / job
# latency); called by bench/report.py with datafile and outfile set.
set terminal pngcairo size 800,500 noenhanced
set output outfile
set datafile separator ","
set title "ragq-worker: jobs/s vs jobs in flight (3 calls x 100 ms per job)"
set xlabel "jobs in flight (RAGQ_CONCURRENCY)"
set ylabel "jobs/s"
set logscale xy
set xrange [0.7:1500]
set key top left
set grid
plot datafile every ::1 using 1:3 with linespoints lw 2 dt 2 title "ideal", \
     datafile every ::1 using 1:2 with linespoints lw 2 pt 7 title "measured"
