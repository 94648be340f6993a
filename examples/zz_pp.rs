use std::time::Instant;
fn main() {
    let workers: usize = std::env::var("W").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let pairs: usize = 1000;
    let rounds: usize = 100;
    let rt = greenrt::Builder::new().workers(workers).build().unwrap();
    let mut v = vec![];
    for _ in 0..25 {
        let t = rt.block_on(move || {
            let start = Instant::now();
            let mut hs = vec![];
            for _ in 0..pairs {
                let (tx1, rx1) = greenrt::sync::mpsc::sync_channel::<u64>(1);
                let (tx2, rx2) = greenrt::sync::mpsc::sync_channel::<u64>(1);
                hs.push(greenrt::spawn(move || {
                    for i in 0..rounds as u64 {
                        tx1.send(i).unwrap();
                        rx2.recv().unwrap();
                    }
                }));
                hs.push(greenrt::spawn(move || {
                    for _ in 0..rounds {
                        let x = rx1.recv().unwrap();
                        tx2.send(x).unwrap();
                    }
                }));
            }
            for h in hs { h.join().unwrap(); }
            start.elapsed()
        });
        v.push(t.as_nanos() as f64 / (pairs * rounds) as f64);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("ns/RT median {:.1} min {:.1}", v[v.len() / 2], v[0]);
}
