//! `tar2erofs IN.tar OUT.img`: builds an image and prints the summary (for manual checks).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        return Err("usage: tar2erofs IN.tar OUT.img".into());
    };
    let tar = std::fs::File::open(input)?;
    let out = std::fs::File::create(output)?;
    let summary = charter_erofs::build_from_tar(tar, out, &charter_erofs::BuildOptions::default())?;
    println!("{summary:?}");
    Ok(())
}
